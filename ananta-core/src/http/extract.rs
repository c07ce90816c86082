//! Extractors whose rejections are [`ApiError`]s in the API's one error shape: JSON bodies
//! ([`ApiJson`], [`OptionalBody`]), path parameters ([`ApiPath`]) and queries ([`ApiQuery`]).

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::ApiError;

/// A JSON body whose rejections are [`ApiError`]s: 400 malformed JSON, 413 too large, 415 not
/// JSON, 422 the wrong shape. An empty body reads as `T::default()` when `T` allows it
/// through [`OptionalBody`]; here it is a 400.
///
/// A body is read as JSON when the request says `application/json` (or `+json`) or says
/// nothing about its type.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body reads as `T::default()` (for POSTs whose body is
/// optional, like `/tasks/{id}/step/propose`).
#[derive(Debug, Clone, Copy, Default)]
pub struct OptionalBody<T>(pub T);

async fn read_json<T: DeserializeOwned, S: Send + Sync>(
    req: Request,
    state: &S,
    empty: Option<fn() -> T>,
) -> Result<T, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_ascii_lowercase);
    let bytes = axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                    "the request body is larger than the server accepts",
                )
            } else {
                ApiError::bad_request("unreadable_body", r.body_text())
            }
        })?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        if let Some(empty) = empty {
            return Ok(empty());
        }
        return Err(ApiError::bad_request(
            "missing_body",
            "this endpoint needs a JSON body",
        ));
    }
    if let Some(ct) = content_type {
        let mime = ct.split(';').next().unwrap_or_default().trim().to_string();
        let json = mime == "application/json" || mime.ends_with("+json");
        // curl -d sends form encoding by default; the body is still read as JSON when it
        // parses (the original Ananta accepted it), otherwise the type is the complaint.
        if !json && mime != "application/x-www-form-urlencoded" && !mime.is_empty() {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!("expected an application/json body, got {mime}"),
            ));
        }
    }
    let mut de = serde_json::Deserializer::from_slice(&bytes);
    let value = T::deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    value.map_err(|e| {
        use serde_json::error::Category;
        match e.classify() {
            Category::Data => ApiError::invalid(format!("the body has the wrong shape: {e}")),
            _ => {
                ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
            }
        }
    })
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state, None).await.map(Self)
    }
}

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state, Some(T::default)).await.map(Self)
    }
}

/// A path parameter whose rejection is an [`ApiError`] (400 `invalid_id` for an id that does
/// not parse).
#[derive(Debug, Clone, Copy)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|r: PathRejection| ApiError::bad_request("invalid_id", r.body_text()))
    }
}

/// A query string whose rejection is an [`ApiError`] (400 `invalid_query`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|r: QueryRejection| ApiError::bad_request("invalid_query", r.body_text()))
    }
}
