//! The HTTP transport shared by the providers: one `reqwest` client, timeouts, and the mapping of
//! transport and HTTP failures to [`LlmError`].

use std::pin::Pin;
use std::time::{Duration, Instant};

use ananta_core::LlmError;
use ananta_core::error::{error_chain, parse_retry_after};
use ananta_core::llm::ProviderHealth;
use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Response, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Default time to connect to the server.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time for a whole non-streamed request, and for the response headers of a stream.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(300);
/// Default longest silence between two pieces of a streamed answer.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The longest line (NDJSON) or event (SSE) a stream may carry before it is rejected.
const MAX_FRAME: usize = 16 << 20;
/// How much of an error body is kept in an error.
const MAX_ERROR_BODY: usize = 4_000;

/// Connection settings every HTTP provider's builder shares.
#[derive(Clone)]
pub(crate) struct HttpConfig {
    pub(crate) base_url: String,
    pub(crate) api_key: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) client: Option<reqwest::Client>,
}

impl std::fmt::Debug for HttpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl HttpConfig {
    pub(crate) fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            api_key: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            headers: Vec::new(),
            client: None,
        }
    }

    /// Checks the settings and builds the client.
    pub(crate) fn build(self) -> Result<Transport, LlmError> {
        let base = self.base_url.trim().trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&base)
            .map_err(|e| LlmError::InvalidRequest(format!("base URL `{base}`: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(LlmError::InvalidRequest(format!(
                "base URL `{base}`: scheme must be http or https"
            )));
        }
        for (what, d) in [
            ("connect timeout", self.connect_timeout),
            ("request timeout", self.request_timeout),
            ("idle timeout", self.idle_timeout),
        ] {
            if d.is_zero() {
                return Err(LlmError::InvalidRequest(format!("{what} must not be zero")));
            }
        }
        let mut headers = HeaderMap::new();
        for (name, value) in &self.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| LlmError::InvalidRequest(format!("header name `{name}`: {e}")))?;
            let mut value = HeaderValue::from_str(value)
                .map_err(|e| LlmError::InvalidRequest(format!("header `{name}` value: {e}")))?;
            // Extra headers often carry credentials; keep them out of Debug output.
            value.set_sensitive(true);
            headers.insert(name, value);
        }
        if let Some(key) = self.api_key.as_deref().filter(|k| !k.is_empty()) {
            let mut value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                LlmError::InvalidRequest("API key is not a valid header value".into())
            })?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let client = match self.client {
            Some(client) => client,
            None => {
                ananta_core::tls::install_default_provider();
                reqwest::Client::builder()
                    .connect_timeout(self.connect_timeout)
                    .build()
                    .map_err(|e| LlmError::InvalidRequest(format!("HTTP client: {e}")))?
            }
        };
        Ok(Transport {
            client,
            base,
            headers,
            request_timeout: self.request_timeout,
            idle_timeout: self.idle_timeout,
        })
    }
}

/// Generates the builder methods every HTTP provider shares; the builder has a field
/// `http: HttpConfig`.
macro_rules! http_builder_methods {
    () => {
        /// Sends `Authorization: Bearer <key>` with every request (an empty key sends none).
        pub fn api_key(mut self, key: impl Into<String>) -> Self {
            self.http.api_key = Some(key.into());
            self
        }

        /// Time to connect to the server (default 10 s).
        pub fn connect_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.http.connect_timeout = timeout;
            self
        }

        /// Time for a whole non-streamed request, and until a stream's response headers
        /// arrive (default 300 s; small CPU models are slow).
        pub fn timeout(mut self, timeout: std::time::Duration) -> Self {
            self.http.request_timeout = timeout;
            self
        }

        /// Longest silence allowed between two pieces of a streamed answer (default 120 s).
        pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
            self.http.idle_timeout = timeout;
            self
        }

        /// Adds a header to every request (e.g. an organisation or project header).
        pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
            self.http.headers.push((name.into(), value.into()));
            self
        }

        /// Uses this `reqwest` client (proxies, TLS roots, connection pool) instead of a new
        /// one; its own timeouts apply in addition to this builder's.
        pub fn client(mut self, client: reqwest::Client) -> Self {
            self.http.client = Some(client);
            self
        }
    };
}
pub(crate) use http_builder_methods;

/// A response body as a stream of byte chunks, each within the idle timeout.
pub(crate) type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, LlmError>> + Send>>;

/// The client and settings of one provider.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    client: reqwest::Client,
    base: String,
    headers: HeaderMap,
    pub(crate) request_timeout: Duration,
    pub(crate) idle_timeout: Duration,
}

impl Transport {
    /// The base URL without a trailing slash.
    pub(crate) fn base(&self) -> &str {
        &self.base
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// POSTs `body` as JSON and returns the response once its headers arrived with a success
    /// status (for streaming), or the mapped error.
    pub(crate) async fn post(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<Response, LlmError> {
        let request = self
            .client
            .post(self.url(path))
            .headers(self.headers.clone())
            .json(body);
        self.send(request).await
    }

    /// GETs `path`; see [`Transport::post`].
    pub(crate) async fn get(&self, path: &str) -> Result<Response, LlmError> {
        let request = self
            .client
            .get(self.url(path))
            .headers(self.headers.clone());
        self.send(request).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, LlmError> {
        let timeout = self.request_timeout;
        let response = match tokio::time::timeout(timeout, request.send()).await {
            Err(_) => return Err(LlmError::Timeout(timeout)),
            Ok(result) => result.map_err(|e| map_reqwest_error(&e, timeout))?,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let body = match tokio::time::timeout(timeout, response.text()).await {
            Ok(Ok(body)) => body,
            Ok(Err(e)) => format!("(error body unreadable: {e})"),
            Err(_) => "(error body timed out)".to_string(),
        };
        Err(error_from_status(status, &headers, &body))
    }

    /// POSTs `body` and reads the whole answer as `T`, all within the request timeout.
    pub(crate) async fn post_json<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, LlmError> {
        let started = Instant::now();
        let response = self.post(path, body).await?;
        self.read_json(response, started).await
    }

    /// GETs `path` and reads the answer as `T`.
    pub(crate) async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Result<T, LlmError> {
        let started = Instant::now();
        let response = self.get(path).await?;
        self.read_json(response, started).await
    }

    /// A health check: GETs `path` and lists the models `models` reads from the answer. A
    /// server that cannot be reached (or does not answer in time) is `Ok` and down; a server
    /// that answers with an error is `Err`, as [`LlmProvider::health`] says.
    ///
    /// [`LlmProvider::health`]: ananta_core::LlmProvider::health
    pub(crate) async fn health<T: DeserializeOwned>(
        &self,
        path: &str,
        models: impl FnOnce(T) -> Result<Vec<String>, LlmError>,
    ) -> Result<ProviderHealth, LlmError> {
        let started = Instant::now();
        match self.get_json::<T>(path).await {
            Ok(answer) => Ok(ProviderHealth::up(started.elapsed(), models(answer)?)),
            Err(e @ (LlmError::Unreachable(_) | LlmError::Timeout(_))) => {
                Ok(ProviderHealth::down(started.elapsed(), e.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a successful response's body as `T` within what is left of the request timeout.
    pub(crate) async fn read_json<T: DeserializeOwned>(
        &self,
        response: Response,
        started: Instant,
    ) -> Result<T, LlmError> {
        let timeout = self.request_timeout;
        let left = timeout.saturating_sub(started.elapsed());
        let text = match tokio::time::timeout(left, response.text()).await {
            Err(_) => return Err(LlmError::Timeout(timeout)),
            Ok(result) => result.map_err(|e| map_reqwest_error(&e, timeout))?,
        };
        parse_json(&text)
    }

    /// The response body as chunks; a pause longer than the idle timeout ends it with
    /// [`LlmError::Timeout`]. Dropping the stream closes the connection, which stops the
    /// generation on the server.
    pub(crate) fn body_stream(&self, response: Response) -> ByteStream {
        let idle = self.idle_timeout;
        let inner = response.bytes_stream();
        let stream = futures::stream::unfold(Some(Box::pin(inner)), move |state| async move {
            let mut inner = state?;
            match tokio::time::timeout(idle, inner.next()).await {
                Err(_) => Some((Err(LlmError::Timeout(idle)), None)),
                Ok(None) => None,
                Ok(Some(Ok(bytes))) => Some((Ok(bytes), Some(inner))),
                Ok(Some(Err(e))) => Some((Err(map_reqwest_error(&e, idle)), None)),
            }
        });
        Box::pin(stream)
    }
}

#[cfg(feature = "openai")]
/// Fails a byte stream whose current line grows beyond a bound (16 MiB), so a hostile or
/// broken server cannot make a line-based decoder (SSE, NDJSON) buffer without end.
pub(crate) fn guard_line_length(body: ByteStream) -> ByteStream {
    let mut since_newline = 0usize;
    let mut failed = false;
    Box::pin(body.map(move |item| {
        if failed {
            return Err(LlmError::InvalidResponse {
                message: "stream already failed".into(),
                raw: String::new(),
            });
        }
        let bytes = item?;
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(pos) => since_newline = bytes.len() - pos - 1,
            None => since_newline += bytes.len(),
        }
        if since_newline > MAX_FRAME {
            failed = true;
            return Err(LlmError::InvalidResponse {
                message: format!("a streamed line exceeds {MAX_FRAME} bytes"),
                raw: String::new(),
            });
        }
        Ok(bytes)
    }))
}

/// Parses a JSON body, or says why it is not the expected JSON.
pub(crate) fn parse_json<T: DeserializeOwned>(text: &str) -> Result<T, LlmError> {
    serde_json::from_str(text).map_err(|e| LlmError::InvalidResponse {
        message: format!("unexpected response body: {e}"),
        raw: excerpt(text),
    })
}

#[cfg(feature = "ollama")]
/// Splits a byte stream into lines (NDJSON), without the line ends; blank lines are skipped.
pub(crate) fn lines(
    body: ByteStream,
) -> Pin<Box<dyn Stream<Item = Result<String, LlmError>> + Send>> {
    struct State {
        body: Option<ByteStream>,
        buf: Vec<u8>,
    }
    let state = State {
        body: Some(body),
        buf: Vec::new(),
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(pos) = st.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = st.buf.drain(..=pos).collect();
                let line = String::from_utf8_lossy(&line).trim().to_string();
                if line.is_empty() {
                    continue;
                }
                return Some((Ok(line), st));
            }
            let body = st.body.as_mut()?;
            match body.next().await {
                Some(Ok(bytes)) => {
                    st.buf.extend_from_slice(&bytes);
                    if st.buf.len() > MAX_FRAME {
                        st.body = None;
                        let err = LlmError::InvalidResponse {
                            message: format!("a streamed line exceeds {MAX_FRAME} bytes"),
                            raw: excerpt(&String::from_utf8_lossy(&st.buf)),
                        };
                        st.buf.clear();
                        return Some((Err(err), st));
                    }
                }
                Some(Err(e)) => {
                    st.body = None;
                    return Some((Err(e), st));
                }
                None => {
                    st.body = None;
                    let rest = String::from_utf8_lossy(&std::mem::take(&mut st.buf))
                        .trim()
                        .to_string();
                    if rest.is_empty() {
                        return None;
                    }
                    return Some((Ok(rest), st));
                }
            }
        }
    }))
}

/// Maps a `reqwest` failure to the error a caller can act on.
pub(crate) fn map_reqwest_error(e: &reqwest::Error, timeout: Duration) -> LlmError {
    let message = error_chain(e);
    if e.is_timeout() {
        LlmError::Timeout(timeout)
    } else if e.is_builder() {
        LlmError::InvalidRequest(message)
    } else if e.is_body() || e.is_decode() {
        LlmError::InvalidResponse {
            message: format!("response body cut off or unreadable: {message}"),
            raw: String::new(),
        }
    } else {
        // Connect errors, resets before a response, DNS: the server cannot be reached now.
        LlmError::Unreachable(message)
    }
}

/// Maps an unsuccessful HTTP status (and its body) to an error.
pub(crate) fn error_from_status(status: StatusCode, headers: &HeaderMap, body: &str) -> LlmError {
    let code = status.as_u16();
    if status == StatusCode::TOO_MANY_REQUESTS {
        return LlmError::RateLimited {
            retry_after: retry_after(headers),
        };
    }
    let message = error_message(body);
    if is_context_error(body) {
        return LlmError::ContextLengthExceeded(message);
    }
    if status == StatusCode::REQUEST_TIMEOUT {
        return LlmError::Server {
            status: code,
            message,
        };
    }
    if status.is_server_error() {
        LlmError::Server {
            status: code,
            message,
        }
    } else {
        LlmError::Rejected {
            status: code,
            body: message,
        }
    }
}

/// The readable part of an error body: `error.message`, `error` (a string), `message`, or the
/// raw text, cut to a few kB.
pub(crate) fn error_message(body: &str) -> String {
    if let Ok(value) = serde_json::from_str::<Value>(body) {
        let found = value
            .pointer("/error/message")
            .or_else(|| value.get("error").filter(|v| v.is_string()))
            .or_else(|| value.get("message"))
            .and_then(Value::as_str);
        if let Some(message) = found {
            return excerpt(message);
        }
    }
    excerpt(body.trim())
}

/// Whether an error body says the prompt did not fit the context window (OpenAI's
/// `context_length_exceeded`, llama.cpp's `exceed_context_size_error`, Ollama's and vLLM's
/// messages).
pub(crate) fn is_context_error(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    [
        "context_length_exceeded",
        "exceed_context_size",
        "exceeds the available context size",
        "maximum context length",
        "context length exceeded",
        "exceeds context length",
        "exceeds the context length",
        "input length exceeds",
        "prompt is too long",
    ]
    .iter()
    .any(|marker| lower.contains(marker))
}

/// The server's requested delay: `retry-after-ms`, then `Retry-After` as seconds or an HTTP
/// date ([`parse_retry_after`]).
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    parse_retry_after(header("retry-after-ms"), header("retry-after"))
}

/// At most a few kB of `text`, cut on a character boundary.
pub(crate) fn excerpt(text: &str) -> String {
    if text.len() <= MAX_ERROR_BODY {
        return text.to_string();
    }
    let mut end = MAX_ERROR_BODY;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes)", &text[..end], text.len())
}

/// Strips a known endpoint suffix from a URL taken from the original Ananta's environment variables
/// (`OLLAMA_URL` defaulted to `…/api/generate`, `OPENAI_URL` to `…/chat/completions`).
pub(crate) fn strip_suffixes(url: &str, suffixes: &[&str]) -> String {
    let mut url = url.trim().trim_end_matches('/').to_string();
    for suffix in suffixes {
        if let Some(stripped) = url.strip_suffix(suffix) {
            url = stripped.trim_end_matches('/').to_string();
            break;
        }
    }
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1.5")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250"), ("retry-after", "9")])),
            Some(Duration::from_millis(250))
        );
        let soon = chrono::Utc::now() + chrono::TimeDelta::seconds(30);
        let date = soon.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = retry_after(&headers(&[("retry-after", &date)])).unwrap();
        assert!(
            wait > Duration::from_secs(25) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        let past = "Wed, 21 Oct 2015 07:28:00 GMT";
        assert_eq!(
            retry_after(&headers(&[("retry-after", past)])),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&headers(&[("retry-after", "-3")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn status_mapping() {
        let none = HeaderMap::new();
        let e = error_from_status(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "2")]),
            "",
        );
        assert!(
            matches!(e, LlmError::RateLimited { retry_after: Some(d) } if d == Duration::from_secs(2))
        );
        assert!(e.is_transient());
        let e = error_from_status(
            StatusCode::BAD_GATEWAY,
            &none,
            r#"{"error":{"message":"upstream"}}"#,
        );
        assert!(matches!(&e, LlmError::Server { status: 502, message } if message == "upstream"));
        assert!(e.is_transient());
        let e = error_from_status(StatusCode::UNAUTHORIZED, &none, r#"{"error":"bad key"}"#);
        assert!(matches!(&e, LlmError::Rejected { status: 401, body } if body == "bad key"));
        assert!(!e.is_transient());
        let body = r#"{"error":{"code":"context_length_exceeded","message":"This model's maximum context length is 8192 tokens"}}"#;
        let e = error_from_status(StatusCode::BAD_REQUEST, &none, body);
        assert!(matches!(&e, LlmError::ContextLengthExceeded(m) if m.contains("8192")));
        let body = r#"{"error":{"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}}"#;
        assert!(matches!(
            error_from_status(StatusCode::BAD_REQUEST, &none, body),
            LlmError::ContextLengthExceeded(_)
        ));
        let long = "x".repeat(10_000);
        let e = error_from_status(StatusCode::NOT_FOUND, &none, &long);
        assert!(matches!(&e, LlmError::Rejected { body, .. } if body.len() < 4_100));
    }

    #[test]
    fn original_urls_lose_their_endpoint() {
        let sfx = ["/api/generate", "/api/chat"];
        assert_eq!(
            strip_suffixes("http://h:11434/api/generate", &sfx),
            "http://h:11434"
        );
        assert_eq!(strip_suffixes("http://h:11434/", &sfx), "http://h:11434");
        assert_eq!(
            strip_suffixes("https://x/v1/chat/completions", &["/chat/completions"]),
            "https://x/v1"
        );
    }

    #[cfg(feature = "ollama")]
    #[tokio::test]
    async fn lines_split_across_chunks() {
        let chunks: Vec<Result<Bytes, LlmError>> = vec![
            Ok(Bytes::from_static(b"{\"a\":1}\n{\"b\"")),
            Ok(Bytes::from_static(b":2}\n\n")),
            Ok(Bytes::from_static(b"{\"c\":3}")),
        ];
        let got: Vec<String> = lines(Box::pin(futures::stream::iter(chunks)))
            .map(|l| l.unwrap())
            .collect()
            .await;
        assert_eq!(got, vec![r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#]);
    }

    #[test]
    fn debug_output_never_shows_the_key() {
        let mut cfg = HttpConfig::new("http://127.0.0.1:1/v1");
        cfg.api_key = Some("sk-very-secret".into());
        cfg.headers.push(("x-org".into(), "org-secret".into()));
        let shown = format!("{cfg:?}");
        assert!(
            !shown.contains("sk-very-secret") && !shown.contains("org-secret"),
            "{shown}"
        );
        let transport = cfg.build().unwrap();
        let shown = format!("{transport:?}");
        assert!(
            !shown.contains("sk-very-secret") && !shown.contains("org-secret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_config_is_a_typed_error() {
        for url in ["not a url", "ftp://host/v1", ""] {
            assert!(
                matches!(
                    HttpConfig::new(url).build(),
                    Err(LlmError::InvalidRequest(_))
                ),
                "{url}"
            );
        }
        let mut cfg = HttpConfig::new("http://127.0.0.1:1");
        cfg.idle_timeout = Duration::ZERO;
        assert!(matches!(cfg.build(), Err(LlmError::InvalidRequest(_))));
        let mut cfg = HttpConfig::new("http://127.0.0.1:1/");
        cfg.api_key = Some("line\nbreak".into());
        assert!(matches!(cfg.build(), Err(LlmError::InvalidRequest(_))));
        let t = HttpConfig::new("http://127.0.0.1:1/v1/").build().unwrap();
        assert_eq!(t.base(), "http://127.0.0.1:1/v1");
    }
}
