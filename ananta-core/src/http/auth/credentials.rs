//! Reading and checking a request's credentials.

use argon2::password_hash::rand_core::{OsRng, RngCore};
use axum::http::{HeaderMap, StatusCode, header};
use subtle::ConstantTimeEq;

use super::*;
use crate::http::error::ApiError;

/// `len` random bytes from the operating system, hex-encoded.
pub(super) fn random_hex(len: usize) -> String {
    let mut bytes = vec![0u8; len];
    OsRng.fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Compares secrets in time independent of where they differ.
pub(super) fn secret_eq(a: &str, b: &str) -> bool {
    a.as_bytes().ct_eq(b.as_bytes()).into()
}

/// A setting that is `None` when empty (after trimming).
pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// The credential of a request: a bearer token in `Authorization`, else `?token=`.
pub(super) fn credential(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, value)| value.trim().to_string())
        .filter(|v| !v.is_empty());
    if bearer.is_some() {
        return bearer;
    }
    let query = query?;
    form_urlencoded::parse(query.as_bytes())
        .filter(|(key, _)| key == "token")
        .map(|(_, value)| value.trim().to_string())
        .find(|v| !v.is_empty())
}

pub(super) fn missing_credentials() -> ApiError {
    ApiError::unauthorized(
        "this endpoint needs credentials: send `Authorization: Bearer <token>` or `?token=<token>`",
    )
}

pub(super) fn invalid_credentials() -> ApiError {
    ApiError::unauthorized("the credentials are invalid or expired")
}

pub(super) fn bad_login() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "unknown user or wrong password",
    )
}

impl Auth {
    /// Whether `credential` is the system token or the pending one of a rotation.
    pub(super) fn is_system_token(&self, credential: &str) -> bool {
        let tokens = self.tokens();
        let current = tokens
            .current
            .as_deref()
            .is_some_and(|t| secret_eq(t, credential));
        let pending = tokens
            .pending
            .as_deref()
            .is_some_and(|t| secret_eq(t, credential));
        current | pending
    }

    /// The principal behind a request's credential, checked (no open-mode shortcut): `None`
    /// without a credential, 401 with an invalid one.
    pub(super) fn verified(
        &self,
        headers: &HeaderMap,
        query: Option<&str>,
    ) -> Result<Option<Principal>, ApiError> {
        let Some(credential) = credential(headers, query) else {
            return Ok(None);
        };
        if self.is_system_token(&credential) {
            return Ok(Some(Principal {
                subject: TOKEN_SUBJECT.into(),
                role: Role::Admin,
            }));
        }
        let data = jsonwebtoken::decode::<Claims>(
            &credential,
            &self.inner.decoding,
            &self.inner.validation,
        )
        .map_err(|_| invalid_credentials())?;
        Ok(Some(Principal {
            subject: data.claims.sub,
            role: data.claims.role,
        }))
    }
}
