//! What both routers share: options, the middleware stack (request ids, tracing, CORS,
//! shutdown, timeouts, body limit, panics, authentication), and serving with graceful
//! shutdown.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use super::auth::{Access, Auth};
use super::error::ApiError;
use super::openapi::RouteSpec;

/// Which origins may call the API from a browser (the original Ananta's dashboard talks to agents
/// directly).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Cors {
    /// No CORS headers: browsers on other origins are refused (the default).
    #[default]
    Off,
    /// Any origin (`*`); credentials are not allowed then.
    Any,
    /// These origins (e.g. `http://localhost:4200`).
    Origins(Vec<String>),
}

impl Cors {
    /// Reads a comma-separated list (`*` for any, empty for off), e.g. `CORS_ORIGINS`.
    pub fn parse(list: &str) -> Self {
        let origins: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        if origins.is_empty() {
            Self::Off
        } else if origins.iter().any(|o| o == "*") {
            Self::Any
        } else {
            Self::Origins(origins)
        }
    }
}

/// Options of a router: limits, CORS, the shutdown signal, and the name `/health` reports.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// The name `/health` reports (`AGENT_NAME`).
    pub name: String,
    /// Largest request body accepted; larger ones get 413 (default 1 MiB).
    pub body_limit: usize,
    /// Longest a request may take before it is answered with 503 `request_timeout`
    /// (default 15 minutes: a forwarded step may wait for a slow model and a long command).
    /// Event streams are not cut by it.
    pub request_timeout: Duration,
    /// CORS.
    pub cors: Cors,
    /// When cancelled, new requests get 503 `shutting_down`, event streams end, and
    /// [`serve`] stops accepting connections.
    pub shutdown: CancellationToken,
}

impl Default for HttpOptions {
    fn default() -> Self {
        Self {
            name: "default".into(),
            body_limit: 1024 * 1024,
            request_timeout: Duration::from_secs(15 * 60),
            cors: Cors::Off,
            shutdown: CancellationToken::new(),
        }
    }
}

impl HttpOptions {
    /// Default options reporting `name`.
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            ..Self::default()
        }
    }
}

#[derive(Clone)]
struct Guard {
    auth: Auth,
    routes: &'static [RouteSpec],
}

/// The access a request needs: the route table's entry for its method and matched path, or,
/// for routes a host added, read for GET/HEAD and write otherwise.
fn access_for(routes: &[RouteSpec], method: &Method, matched: Option<&str>) -> (Access, bool) {
    if let Some(path) = matched {
        // Exact first; a suffix match covers a router nested under a prefix.
        let same = |r: &&RouteSpec| r.method == method.as_str();
        if let Some(spec) = routes
            .iter()
            .filter(same)
            .find(|r| r.path == path)
            .or_else(|| routes.iter().filter(same).find(|r| path.ends_with(r.path)))
        {
            return (spec.access, spec.own_auth);
        }
    }
    if method == Method::GET || method == Method::HEAD || method == Method::OPTIONS {
        (Access::Read, false)
    } else {
        (Access::Write, false)
    }
}

async fn guard(State(guard): State<Guard>, mut req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str());
    let (access, own_auth) = access_for(guard.routes, req.method(), matched);
    if !own_auth {
        match guard
            .auth
            .authorize(req.headers(), req.uri().query(), access)
        {
            Ok(principal) => {
                req.extensions_mut().insert(principal);
            }
            Err(e) => return e.into_response(),
        }
    }
    next.run(req).await
}

#[derive(Clone)]
struct Limits {
    shutdown: CancellationToken,
    timeout: Duration,
}

async fn limits(State(limits): State<Limits>, req: Request, next: Next) -> Response {
    if limits.shutdown.is_cancelled() {
        return ApiError::shutting_down().into_response();
    }
    match tokio::time::timeout(limits.timeout, next.run(req)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "request_timeout",
            format!("the request took longer than {:?}", limits.timeout),
        )
        .into_response(),
    }
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take this method",
    )
}

#[derive(Clone, Copy, Default)]
struct UlidRequestId;

impl MakeRequestId for UlidRequestId {
    fn make_request_id<B>(&mut self, _request: &axum::http::Request<B>) -> Option<RequestId> {
        HeaderValue::from_str(&ulid::Ulid::new().to_string())
            .ok()
            .map(RequestId::new)
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the server failed on this request",
    )
    .into_response()
}

/// The client's address, when the server was started with connect info (see [`serve`]);
/// the unspecified address otherwise (e.g. a router called in-process).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClientIp(pub(crate) std::net::IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip())
                .unwrap_or(std::net::IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)),
        ))
    }
}

/// `POST /login` for both roles: the rate limit per client, then the password check off the
/// async workers (verifying an argon2 hash takes tens of milliseconds of CPU).
pub(crate) async fn login_answer(
    auth: &Auth,
    ip: std::net::IpAddr,
    body: super::auth::LoginRequest,
) -> Result<super::auth::LoginResponse, ApiError> {
    auth.check_rate(super::auth::RateBucket::Login, ip)?;
    let auth = auth.clone();
    tokio::task::spawn_blocking(move || auth.login(&body))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                format!("login failed unexpectedly: {e}"),
            )
        })?
}

/// Wraps a router of API routes with the fallbacks and the middleware stack.
pub(crate) fn finish(
    router: Router,
    routes: &'static [RouteSpec],
    auth: Auth,
    options: &HttpOptions,
) -> Router {
    let request_id = HeaderName::from_static("x-request-id");
    let mut router = router
        .route_layer(middleware::from_fn_with_state(
            Guard { auth, routes },
            guard,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(options.body_limit))
        .layer(middleware::from_fn_with_state(
            Limits {
                shutdown: options.shutdown.clone(),
                timeout: options.request_timeout,
            },
            limits,
        ));
    match &options.cors {
        Cors::Off => {}
        Cors::Any => router = router.layer(CorsLayer::permissive()),
        Cors::Origins(origins) => {
            let origins: Vec<HeaderValue> = origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect();
            router = router.layer(
                CorsLayer::new()
                    .allow_origin(AllowOrigin::list(origins))
                    .allow_methods([
                        Method::GET,
                        Method::POST,
                        Method::PATCH,
                        Method::DELETE,
                        Method::OPTIONS,
                    ])
                    .allow_headers([
                        axum::http::header::AUTHORIZATION,
                        axum::http::header::CONTENT_TYPE,
                        HeaderName::from_static(super::types::IDEMPOTENCY_HEADER),
                    ]),
            );
        }
    }
    router
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(SetRequestIdLayer::new(request_id, UlidRequestId))
        .layer(CatchPanicLayer::custom(panic_response))
}

/// Serves `router` on `listener` until `shutdown` is cancelled, then stops accepting
/// connections and lets requests in flight finish for up to `drain` (event streams end at
/// once); whatever still runs after that is dropped.
///
/// Client addresses are recorded, so the rate limits of `/login` and `/register` apply per
/// client.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: CancellationToken,
    drain: Duration,
) -> std::io::Result<()> {
    let signal = shutdown.clone();
    let server = axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move { signal.cancelled().await });
    let server = std::pin::pin!(server.into_future());
    let mut server = server;
    tokio::select! {
        result = &mut server => result,
        () = async {
            shutdown.cancelled().await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!(?drain, "requests still running after the shutdown deadline were dropped");
            Ok(())
        }
    }
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C); on other platforms on Ctrl-C.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = int.recv() => tracing::info!("SIGINT: shutting down"),
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
